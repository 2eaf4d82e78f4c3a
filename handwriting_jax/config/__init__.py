"""Configuration: the default of every field and the validator that checks each one before anything runs."""
