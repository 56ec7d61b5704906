"""`profile` and `cost`: the cost of every module and head, and of a recipe's training step."""
