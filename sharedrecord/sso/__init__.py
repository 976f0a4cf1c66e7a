"""Staff single sign-on through an OpenID Connect provider (NHS CIS2 or any other)."""
