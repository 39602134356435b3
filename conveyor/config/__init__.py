"""Configuration: the frozen model (`model`) and the strict reader of the files (`reader`)."""
