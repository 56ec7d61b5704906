"""`run`: train and evaluate every (head, seed) of an experiment."""
