-- Rows of a Parquet file.
select count(*) from read_parquet($path);
