"""Tests of the scripts under scripts/ that run real servers."""
