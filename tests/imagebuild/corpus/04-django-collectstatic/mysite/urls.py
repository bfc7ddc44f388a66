"""No views: the site serves its static files."""

urlpatterns: list[object] = []
