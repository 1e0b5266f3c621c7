"""Validation: the rule language (spec), its evaluation and its runner."""
