"""The one place per library where Soundpost leans on internals, each kept for a measured reason."""
