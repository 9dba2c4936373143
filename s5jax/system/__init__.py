"""The refined S5 system of the report: its config, its decisions, and the pipeline over the models."""
