"""Datasets: readers for user datasets (flickr8k, coco, folder), built-in offline sources (shapes,
emoji, clipart, fashion-mnist), the prepared-dataset writer, and the reader every training stage uses."""
