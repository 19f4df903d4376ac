"""The DP systems Accord is compared with: pinned requirements, their venvs and one worker each."""
