"""Start-up configuration: typed settings and logging set-up."""
