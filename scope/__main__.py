from scope.cli import run

run()
