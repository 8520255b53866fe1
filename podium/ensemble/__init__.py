"""Task-agnostic ensembling: model soups, votes, test-time augmentation."""
