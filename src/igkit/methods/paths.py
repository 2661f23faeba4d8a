"""Attribution methods of the paths family (being built; registers nothing yet)."""
