-- The persons page finds persons by the start of a distinct id or of their
-- email or name, in any case. Byte order ("C") makes a prefix a range,
-- whatever the database's locale.
CREATE INDEX persons_by_email ON persons (team_id, (lower(properties::json ->> 'email')) COLLATE "C");
CREATE INDEX persons_by_name ON persons (team_id, (lower(properties::json ->> 'name')) COLLATE "C");
CREATE INDEX person_distinct_ids_by_prefix ON person_distinct_ids (team_id, distinct_id COLLATE "C");
