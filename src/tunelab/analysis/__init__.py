"""Reading a study's results: learning-curve diagnosis and hyperparameter importance."""
