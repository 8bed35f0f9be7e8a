-- Version 5 created the call_outcomes view, which is defined in
-- ../functions.sql now (applied on every migrate). The file stays so that
-- version 5 means the same in every database; nothing is left for it to do.
SELECT 1;
