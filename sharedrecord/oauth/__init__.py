"""The OAuth2 server behind the FHIR read API: only what SMART advertises, tokens that end.

django-oauth-toolkit (DOT) and oauthlib speak the protocol; this package narrows
them to what `.well-known/smart-configuration` advertises (fhirapi/capability.py) and
ties a member of staff's tokens to the consent that made them:

1. The server (SmartServer, SmartValidator): the authorization code grant for
   staff applications (PKCE with a 43-character S256 challenge and a 43-128
   character verifier; the redirect_uri named on both requests; `user/` and
   `patient/` scopes), client credentials for partner systems (`system/` and
   `patient/` scopes), and refresh with rotation. Clients authenticate with
   client_secret_basic only; access tokens count only in the Authorization
   header.
2. Consent is given by the consent page's POST, every time, in a signed-in
   session: an ApiAuthorization (member of staff, application, session).
   Exchanging its code binds it to the refresh token family; presenting the
   code again ends it (RFC 6749 section 4.1.2).
3. The chain ends for good (every token revoked; reactivating the account
   brings nothing back) when its session is signed out or replaced, the
   password changes, the account is deactivated, or API_REFRESH_TOKEN_SECONDS
   after consent, however often it was refreshed. api_tokens_revoke_for ends
   it at once; otherwise the next use finds it ended and revokes it.
4. Every OAuth event is an audit event with `detail.via = "oauth"`: consent
   given or refused, token issued, refreshed, revoked, introspected, refused.
   The actor is the member of staff where there is one, else the client
   (a partner system as its organisation's service account); never a token,
   a code or a secret. State changes are audited where they are made (the
   validator, in the request's transaction), refusals and introspection by
   the endpoints.

Modules: consent.py (consents, token chains and their audit events),
server.py (the validator and the oauthlib server DOT is given), views.py
(the HTTP endpoints).
"""
