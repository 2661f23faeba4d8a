"""Attribution methods of the perturbation family (being built; registers nothing yet)."""
