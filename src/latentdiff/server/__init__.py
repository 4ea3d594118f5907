"""latentdiff serve: a thin HTTP layer (page, A1111 and OpenAI APIs, job queue) over latentdiff.pipeline."""
