"""Attribution methods of the layers family (being built; registers nothing yet)."""
