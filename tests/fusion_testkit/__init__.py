"""Tests of the shared test, benchmark and script support package."""
