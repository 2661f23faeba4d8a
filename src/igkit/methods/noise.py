"""Attribution methods of the noise family (being built; registers nothing yet)."""
