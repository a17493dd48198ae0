-- Databases of the pools pgdog.toml adds beyond the spec (secondary, db_0..db_9): created on both
-- the primary and the mirror server. Used by docker-compose.yml; clusters.sh creates the same ones.
CREATE DATABASE secondary;
CREATE DATABASE db_0;
CREATE DATABASE db_1;
CREATE DATABASE db_2;
CREATE DATABASE db_3;
CREATE DATABASE db_4;
CREATE DATABASE db_5;
CREATE DATABASE db_6;
CREATE DATABASE db_7;
CREATE DATABASE db_8;
CREATE DATABASE db_9;
