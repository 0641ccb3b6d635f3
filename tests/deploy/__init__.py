"""Tests that build and run the deploy/ artefacts for real (`make test-deploy`)."""
