-- The change feed covers every document type, not only callflows.
ALTER TABLE changes ADD COLUMN doc_type TEXT NOT NULL DEFAULT 'callflow';
