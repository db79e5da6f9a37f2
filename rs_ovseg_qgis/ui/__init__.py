"""Widgets: the dock panel and its parts."""
