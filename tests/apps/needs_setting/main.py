"""The app module: importing its helpers fails (MISSING_SETTING is not set)."""

from apps.needs_setting import helpers


async def app(scope: object, receive: object, send: object) -> None:
    raise AssertionError(helpers.SETTING)
