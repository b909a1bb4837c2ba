"""The call model: the caller's leg as a UAS dialog (pure) and the service that runs it."""
