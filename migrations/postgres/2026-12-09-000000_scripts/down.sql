DROP TABLE kv_scripts;
