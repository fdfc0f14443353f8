-- The persons page finds persons by the start of a distinct id (the
-- primary key of person_distinct_ids) or of their email or name, in any
-- case.
CREATE INDEX persons_by_email ON persons (team_id, lower(json_extract(properties, '$.email')));
CREATE INDEX persons_by_name ON persons (team_id, lower(json_extract(properties, '$.name')));
