-- A listening menu's media stream: its single-use token, what it listens
-- for, and the decision the stream reached (read by the Connect action).
ALTER TABLE calls ADD COLUMN listen jsonb;
