"""Attribution methods of the shap family (being built; registers nothing yet)."""
