"""Stand-in for Portal's plugin folder; tests add the directory holding our app to `__path__`."""
