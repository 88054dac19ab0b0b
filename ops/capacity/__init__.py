"""``mwap capacity``: how many worker processes, API replicas and Redis/MongoDB operations per
second N integrations need, from the per-job costs ``mwap bench`` measured (``model.py``, pure;
``costs.py`` reads them from a results file; ``table.py`` renders them; ``cli.py`` the command)."""
