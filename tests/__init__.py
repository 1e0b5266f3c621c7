"""Tests for workshop-backend (run with trial)."""
