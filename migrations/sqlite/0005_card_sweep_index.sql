-- posgate schema 5: the store-and-forward worker looks for card transactions
-- stuck in_progress and for authorizations past their hold several times a
-- second. This index keeps both look-ups to the few open card transactions
-- instead of a scan of every transaction ever made.
CREATE INDEX transactions_card_status ON transactions (status, updated_at)
    WHERE kind = 'card_payment';
