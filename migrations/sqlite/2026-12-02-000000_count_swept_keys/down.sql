DROP TABLE kv_sweeps;
