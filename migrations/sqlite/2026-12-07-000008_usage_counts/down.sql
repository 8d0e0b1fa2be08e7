DROP TABLE usage_rollups;
DROP TABLE usage_days;
DROP TABLE usage_hours;
DROP TABLE usage_minutes;
