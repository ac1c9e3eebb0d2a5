"""An app module that cannot be imported: the supervisor must give up with this error."""

import steadyloop_no_such_module_for_tests  # noqa: F401

app = None
