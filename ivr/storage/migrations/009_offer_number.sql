-- An offer's number within its caller's transfer progress (Progress.offer):
-- a counselor leg's callbacks name the offers row, the progression the
-- number. NULL for an offer never rung (and for those made before this).
ALTER TABLE offers ADD COLUMN number integer;
