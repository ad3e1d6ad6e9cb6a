from starlette.routing import Route

from apps.user import mfa_views, passkey_views, views

# Most frequent first: routes are tried in order.
routes = [
    Route("/me", views.me, methods=["GET"]),
    Route("/verify", views.verify, methods=["GET"]),
    Route("/login", views.login, methods=["POST"]),
    Route("/refresh-token", views.refresh_token, methods=["POST"]),
    Route("/register", views.register, methods=["POST"]),
    Route("/logout", views.logout, methods=["POST"]),
    Route("/me", views.update_me, methods=["PATCH"]),
    Route("/me", views.delete_me, methods=["DELETE"]),
    Route("/me/password", views.change_password, methods=["POST"]),
    Route("/me/email", views.change_email, methods=["POST"]),
    Route("/email/verification", views.send_verification, methods=["POST"]),
    Route("/email/verify", views.verify_email, methods=["POST"]),
    Route("/password/reset", views.request_password_reset, methods=["POST"]),
    Route("/password/reset/confirm", views.confirm_password_reset, methods=["POST"]),
    Route("/sessions", views.session_list, methods=["GET"]),
    Route("/sessions/{session_id:uuid}", views.session_delete, methods=["DELETE"]),
    Route("/logout-all", views.logout_all, methods=["POST"]),
    Route("/events", views.event_list, methods=["GET"]),
    Route("/login/mfa", mfa_views.login_mfa, methods=["POST"]),
    Route("/mfa/totp/setup", mfa_views.totp_setup, methods=["POST"]),
    Route("/mfa/totp/confirm", mfa_views.totp_confirm, methods=["POST"]),
    Route("/mfa/totp", mfa_views.totp_disable, methods=["DELETE"]),
    Route("/mfa/recovery-codes", mfa_views.recovery_codes, methods=["POST"]),
    Route("/login/passkey/options", passkey_views.passkey_login_options, methods=["POST"]),
    Route("/login/passkey", passkey_views.passkey_login, methods=["POST"]),
    Route("/passkeys", passkey_views.passkey_list, methods=["GET"]),
    Route("/passkeys", passkey_views.passkey_create, methods=["POST"]),
    Route("/passkeys/register/options", passkey_views.passkey_register_options, methods=["POST"]),
    Route("/passkeys/reauth/options", passkey_views.passkey_reauth_options, methods=["POST"]),
    Route("/passkeys/{passkey_id:int}", passkey_views.passkey_rename, methods=["PATCH"]),
    Route("/passkeys/{passkey_id:int}", passkey_views.passkey_delete, methods=["DELETE"]),
]

# Under /.well-known (RFC 8615), at the site's root.
well_known_routes = [
    Route("/change-password", views.change_password_page, methods=["GET"]),
    Route("/jwks.json", views.jwks, methods=["GET"]),
]
