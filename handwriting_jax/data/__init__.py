"""Data pipeline: IAM-OnDB reader and cache, embedded Hershey corpus, preprocessing, alphabet, batches."""
