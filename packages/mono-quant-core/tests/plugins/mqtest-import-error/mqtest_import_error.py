"""A plugin whose module fails to import."""

import mqtest_this_module_does_not_exist  # noqa: F401
