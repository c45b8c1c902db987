"""Process configuration: settings (from `COMET_*` environment), logging and metrics set-up."""
