"""The web console and admin API for staff: security, platform admins and auditors."""
