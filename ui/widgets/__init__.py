"""Small drawing widgets shared by the views: frame, score bar, verdict, plots, reason picker."""
