"""The live console for supervisors and counselors, served under /console/.

    from ivr.admin.console.setup import create_console_app, live_updates
    app.add_subapp("/console", create_console_app(admin_token, secure_cookie))
    app.cleanup_ctx.append(live_updates)   # after the database is open

Modules: setup (the wiring), tokens (issued, hashed, revoked), sessions
(cookie sessions and the sign-in limit, in PostgreSQL), board (what is
shown, read in one go), events (changes polled, Server-Sent Events out), views
(pages and form posts), pictures (the flows as SVG), assets (templates and
the vendored scripts), command (`ivr tokens`).
"""
