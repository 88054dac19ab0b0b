"""The shared core of mwap-tasks: settings, storage, the job ledger; the layers above build on it."""
