"""Request and response models of the API (the ``XCreate`` / ``XPublic`` naming)."""
