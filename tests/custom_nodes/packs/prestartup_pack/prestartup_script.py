from pathlib import Path

Path(__file__).with_name("prestartup_ran.txt").write_text("yes")
