"""The shared core of mwap-tasks: settings, storage, the job ledger and the command line."""
