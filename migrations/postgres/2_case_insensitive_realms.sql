-- Realms are unique whatever their case, as Kazoo compares them lower-cased
-- (`kzd_accounts:is_unique_realm`); logins find an account by its lower-cased realm.
CREATE UNIQUE INDEX accounts_realm_lower ON accounts (lower(realm));
